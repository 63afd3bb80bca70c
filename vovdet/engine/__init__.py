from .hooks import (CheckpointFitHook, CheckpointMismatchError,
                    FiniteLossHook, NonFiniteLossError,
                    PortableCheckpointHook)

__all__ = [
    'CheckpointFitHook', 'CheckpointMismatchError', 'FiniteLossHook',
    'NonFiniteLossError', 'PortableCheckpointHook'
]
