"""The two networks and everything about them: architectures, preprocessing, post-processing, forward passes,
weights, the model card and the engines that run them. Imports no torch itself (``train.events`` reads ``MODELS``)."""

#: The two models, in the order a run trains them: each names its weights file, its card section and its engine part.
MODELS: tuple[str, ...] = ("segmentation", "grade")
