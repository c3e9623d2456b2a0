from contrastlab.cli import main

main()
