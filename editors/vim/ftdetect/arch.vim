autocmd BufRead,BufNewFile *.arch setfiletype arch
