from .checkpoint import (UnsafeCheckpointError, install_safe_checkpoint_loader,
                         register_safe_globals, safe_load_checkpoint)
from .config_check import (ConfigOverrideError, check_top_level_overrides,
                           inherited_top_level_keys)
from .data_check import (DatasetNotFoundError, MalformedAnnotationError,
                         check_dataset_files)
from .dist import (adapt_dist_cfg_for_device, end_distributed_process,
                   init_cpu_distributed, shutdown_distributed)
from .fileio import AtomicLocalBackend, atomic_write

__all__ = [
    'ConfigOverrideError', 'check_top_level_overrides',
    'inherited_top_level_keys',
    'UnsafeCheckpointError', 'install_safe_checkpoint_loader',
    'register_safe_globals', 'safe_load_checkpoint', 'DatasetNotFoundError',
    'MalformedAnnotationError',
    'check_dataset_files', 'adapt_dist_cfg_for_device',
    'init_cpu_distributed', 'shutdown_distributed', 'end_distributed_process',
    'AtomicLocalBackend', 'atomic_write'
]
