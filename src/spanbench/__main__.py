from spanbench.cli import main

main()
