"""The console proxy process (manage.py console_proxy): noVNC's WebSocket to a guest's VNC, per signed token."""
