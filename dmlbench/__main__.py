"""`python -m dmlbench` (also what `torchrun -m dmlbench` runs)."""

from dmlbench.cli import main

if __name__ == "__main__":
    main()
