" Vim syntax for archsmith's .arch specs; the words are those of archsmith/highlight.py.
if exists("b:current_syntax")
  finish
endif

syntax keyword archKeyword assert elif else for if return seq
syntax keyword archOperator and in not or
syntax keyword archConstant false none true
syntax match archDefinition "^\(block\|def\|fn\|import\|model\)\>"
syntax match archStatement "^\s*\zs\(buffer\|declare\|param\|recompute\)\ze\s\+\h"
syntax match archInput "\<input\ze\s\+[[:alnum:]_[(]"
syntax match archLayerName "\(^\s*\|[|]\s*\)\zs\h\w*\({[^{}]*}\w*\)*\ze\s*:"
syntax keyword archTraining training
syntax keyword archFunction abs adaptive_avgpool1d adaptive_avgpool2d adaptive_maxpool1d adaptive_maxpool2d add amax avgpool1d avgpool2d batchnorm1d
syntax keyword archFunction batchnorm2d ceil channel_shuffle chunk concat conv1d conv2d div drop_path dropout
syntax keyword archFunction elu enumerate exp flatten float floor full gelu groupnorm hardsigmoid
syntax keyword archFunction hardswish identity instancenorm2d int layernorm layernorm2d leaky_relu len linear list
syntax keyword archFunction localresponsenorm log log2 log_softmax matmul max maxpool1d maxpool2d mean min
syntax keyword archFunction mish mul neg normal ones pad permute pixel_shuffle pixel_unshuffle pow
syntax keyword archFunction prelu range relu relu6 reshape round rsqrt selu sigmoid silu
syntax keyword archFunction slice softmax softplus split sqrt squeeze stack str sub sum
syntax keyword archFunction tanh transpose trunc_normal unflatten unsqueeze upsample zeros zip
syntax match archNumber "\<\d\+\(\.\d\+\)\=\([eE][+-]\=\d\+\)\=\>"
syntax region archString start=+"+ end=+"+ oneline contains=archInterpolation
syntax match archInterpolation "{[^{}"]*}" contained
syntax match archComment "#.*$"

highlight default link archKeyword Statement
highlight default link archOperator Operator
highlight default link archConstant Constant
highlight default link archDefinition Structure
highlight default link archStatement Statement
highlight default link archInput Structure
highlight default link archLayerName Label
highlight default link archTraining Special
highlight default link archFunction Function
highlight default link archNumber Number
highlight default link archString String
highlight default link archInterpolation Special
highlight default link archComment Comment

let b:current_syntax = "arch"
