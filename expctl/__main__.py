from expctl.cli.entry import main

main()
