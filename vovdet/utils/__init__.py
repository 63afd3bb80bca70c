from .checkpoint import (CorruptCheckpointError, UnsafeCheckpointError,
                         from_plain, install_safe_checkpoint_loader,
                         register_safe_globals, safe_load_checkpoint,
                         to_plain)
from .config_check import (ConfigOverrideError, check_top_level_overrides,
                           inherited_top_level_keys, unread_options)
from .data_check import (DatasetNotFoundError, MalformedAnnotationError,
                         check_dataset_files)
from .dist import (adapt_dist_cfg_for_device, end_distributed_process,
                   init_cpu_distributed, launch_rank, shutdown_distributed)
from .fileio import AtomicLocalBackend, atomic_write, remove_stale_temp_files
from .model_check import (ModelConfigError, check_neck_channels,
                          check_num_classes, explain_group_norm_error,
                          state_dict_fit)
from .process import children_die_with_parent
from .work_dir import (CheckpointNotFoundError, WorkDirBusyError,
                       WorkDirLock, find_resume_checkpoint)

__all__ = [
    'ConfigOverrideError', 'check_top_level_overrides',
    'inherited_top_level_keys', 'unread_options', 'CorruptCheckpointError',
    'UnsafeCheckpointError', 'install_safe_checkpoint_loader',
    'register_safe_globals', 'safe_load_checkpoint', 'to_plain',
    'from_plain', 'DatasetNotFoundError', 'MalformedAnnotationError',
    'check_dataset_files', 'adapt_dist_cfg_for_device',
    'init_cpu_distributed', 'launch_rank', 'shutdown_distributed',
    'end_distributed_process',
    'AtomicLocalBackend', 'atomic_write', 'remove_stale_temp_files',
    'ModelConfigError', 'check_neck_channels', 'check_num_classes',
    'explain_group_norm_error', 'state_dict_fit', 'children_die_with_parent',
    'CheckpointNotFoundError', 'WorkDirBusyError', 'WorkDirLock',
    'find_resume_checkpoint'
]
