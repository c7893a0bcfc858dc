"""The real sshd now lives in ``devtools.sshd`` (the bench uses it too); import it from there."""
from devtools.sshd import SshdInfo, find_sshd, pinned_ssh_client, run_sshd, sftp_client, write_ed25519_key

__all__ = ["SshdInfo", "find_sshd", "pinned_ssh_client", "run_sshd", "sftp_client", "write_ed25519_key"]
