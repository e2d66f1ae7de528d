"""Triton GPU kernels of tokensieve, shipped as ``tokensieve.triton_kernels``.

Each kernel lives in its own module beside a plain-torch reference with the same signature
(see ../shared/DESIGN.md). Importing this package needs neither torch nor triton; the kernel
modules import them when loaded.
"""

__all__: list[str] = []
