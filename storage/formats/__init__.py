"""The formats this project recommends, one module (or small package) each."""
