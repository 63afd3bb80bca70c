from .hooks import FiniteLossHook, NonFiniteLossError

__all__ = ['FiniteLossHook', 'NonFiniteLossError']
