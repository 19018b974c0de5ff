"""Adaptive attacks: atbench's own submitted attacks (`attacks.submitted`), one file each, made for
the defenses a fixed protocol can overstate: BPDA for non-differentiable preprocessing, EOT-PGD for
randomized models, a multi-targeted margin attack for models whose cross-entropy gradient misleads.

They run only when asked (`atbench attack --attack NAME`), never as part of a protocol. The
SUBMITTED_ATTACKS registry imports every module of this package on its first lookup.
"""
