import sys

from python_backend.cli import main

if __name__ == "__main__":
    sys.exit(main())
