"""What every method shares and no method is: the base class (base.py), heads, momentum targets, cross-rank
gathering (distributed.py), optimisers and schedules (optim.py), GradCache and the other speed options, memory
banks, argument checks, weights from another run (transfer.py), the base of paired methods (two_tower.py) and the
backbone factory (backbones.py). It imports no method."""
