from opdesk.cli import main

main()
