from expctl.cli.main import main

main()
