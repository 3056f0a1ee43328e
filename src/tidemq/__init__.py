"""tidemq: a RocketMQ-compatible message broker in Python.

The package is layered inside-out (see docs/architecture.md): ``store`` and ``protocol`` are pure cores that
import nothing else from tidemq; ``namesrv`` and ``broker`` build on them; ``gateways`` and ``cli`` are the
I/O edges that nothing imports.
"""

__version__ = "0.1.0.dev0"
