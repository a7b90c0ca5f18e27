"""The recruiter monitor socket ``/ws/monitor`` (PROTOCOL.md section 2): the shell
around :class:`protocol.monitor.MonitorProtocol`, live events from the bus, replays
from the event log (server/storage/events.py)."""
