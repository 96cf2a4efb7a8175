from needle.cli import main

main()
