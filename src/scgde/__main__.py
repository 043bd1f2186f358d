from scgde.cli import main

main()
