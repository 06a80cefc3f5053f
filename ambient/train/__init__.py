"""Training: data (manifests, corpus readers, speech synthesis, augmentation), the trainer and evaluation.

Submodules are imported explicitly (``from ambient.train.manifest import read_manifest``); this
package imports nothing, so that light tools do not pull in torch.
"""

__all__: list[str] = []
