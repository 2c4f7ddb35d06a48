import signal

try:
    from .cli import main
    status = main()
except KeyboardInterrupt:  # Ctrl-C while starting, before the command's own handling: nothing was written
    status = 130
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: exiting is not to be cut short
raise SystemExit(status)
