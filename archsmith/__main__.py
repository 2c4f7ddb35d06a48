try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while still starting: nothing was written yet
    raise SystemExit(130) from None

raise SystemExit(main())
