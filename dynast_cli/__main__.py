from dynast_cli.cli import main

main()
