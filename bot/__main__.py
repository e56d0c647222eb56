"""`python -m bot` runs the `hitl` command line."""

from bot.cli import main

main()
