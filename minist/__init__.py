"""minist: a from-scratch, educational neural style transfer engine (Gatys et al. 2015).

Every equation of the paper lives in code beside its docstring; see README.md for the map from
equations to functions and to the tutorials that derive them.
"""

__version__ = "0.1.0"
