from roleswap.cli import main

main()
