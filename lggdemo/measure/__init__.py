"""Clinical measurements of a tumour mask in mm (RANO-LGG diameters, volume with a range, mean diameter,
laterality), and a mask's agreement with a reference. Pure: numpy, scipy; MONAI (lazily) for surface metrics.

    from lggdemo.measure import measure, Measurements, Diameter, agreement, Agreement

Modules: :mod:`.measurements` (the one call), :mod:`.diameters`, :mod:`.volume`, :mod:`.location`,
:mod:`.agreement`.
"""

from lggdemo.measure.agreement import Agreement, agreement, percent_difference
from lggdemo.measure.diameters import Diameter
from lggdemo.measure.measurements import MEASURABLE_MM, MeasureError, Measurements, measure

__all__ = ["Agreement", "Diameter", "MEASURABLE_MM", "MeasureError", "Measurements", "agreement", "measure",
           "percent_difference"]
