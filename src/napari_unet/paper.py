"""The paper's numbers (Ronneberger, Fischer & Brox 2015), in one light module.

Imported by the core functions that use them as defaults, and by the napari docks,
which show them without importing the heavy modules.
"""

#: Weight map: amplitude of the border term (paper: w0 = 10).
W0 = 10.0
#: Weight map: width of the border term in pixels (paper: sigma of about 5 pixels).
SIGMA = 5.0
