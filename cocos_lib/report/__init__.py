"""What the notebooks and the README show: committed results -> tables (results), the paper's tables and the one
markdown writer (tables), every figure (plots)."""
