"""The errors faultcast raises: one type per failure a user can act on.

FaultcastError
 ├── ConfigError    config.yaml is wrong; the message names the key and the fix
 ├── ModelError     a model file is missing, unreadable or breaks the step-model contract
 ├── DataError      a recorded series to train or evaluate on is unreadable, malformed or too short
 ├── UsageError     a command-line option is out of range or lacks one it needs
 ├── BrokerError    Kafka cannot be reached or refused a request
 │    └── FencedError  another running instance uses this one's kafka.client.group_instance_id
 └── DeviceError    the configured device (GPU) cannot be used
"""


class FaultcastError(Exception):
    """Base of every error faultcast raises on purpose."""


class ConfigError(FaultcastError):
    """The configuration is invalid; the message says which key and how to fix it."""


class ModelError(FaultcastError):
    """A model cannot be loaded or does not follow the step-model contract (docs/model-format.md)."""


class DataError(FaultcastError):
    """A data file cannot be used; the message names the file (and line) and what was expected."""


class ParityError(FaultcastError):
    """An exported step model does not reproduce its PyTorch model on held-out readings: float32
    rounding in that fit grows over the steps. Another seed trains a model that can ship."""


class UsageError(FaultcastError):
    """A command-line option cannot be used; the message names the command and the option."""


class BrokerError(FaultcastError):
    """Kafka could not be reached or rejected a request."""


class FencedError(BrokerError):
    """Another running consumer took this instance's static group membership (the same
    group_instance_id); restarting would only take it back and fence the other."""


class DeviceError(FaultcastError):
    """The configured inference device is not available."""
