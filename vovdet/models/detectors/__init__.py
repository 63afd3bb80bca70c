from .refinedet import RefineDet

__all__ = ['RefineDet']
