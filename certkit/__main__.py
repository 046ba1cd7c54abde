"""`python -m certkit` runs the CLI."""

from certkit.cli import main

if __name__ == "__main__":
    main()
