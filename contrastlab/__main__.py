from contrastlab.platform.cli import main

main()
