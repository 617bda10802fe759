"""What scanners and the push receivers are told by configuration: the `scanners` section of
ingest's Settings, `ScannersConfig` (flat SOHOA_SCANNERS, SOHOA_SCANNER_DISCOVERY, SOHOA_FOLDER,
SOHOA_FTP, SOHOA_SMTP... as documented in README).

Kept apart from the clients and receivers themselves so that reading the settings does not load
the eSCL client (httpx), the FTP and SMTP servers (pyftpdlib, aiosmtpd) in every process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator


class FolderConfig(BaseModel):
    devices: dict[str, Path]  # scanner (device) name -> the folder it writes to
    poll_seconds: float = Field(default=10.0, gt=0)
    settle_seconds: float = Field(default=5.0, ge=0)
    # A scan cut short by its own structure (PDF without %%EOF, JPEG without EOI, PNG without IEND,
    # TIFF whose strips reach past the end) is still being written, unless it stays unchanged this
    # long: then it is taken all the same, marked incomplete, and goes to review. The key
    # "unfinished_pdf_seconds" (its name when only PDFs were checked) is still read.
    unfinished_seconds: float = Field(
        default=120.0, ge=0,
        validation_alias=AliasChoices("unfinished_seconds", "unfinished_pdf_seconds"))
    inotify: bool = True  # False on network mounts that never deliver events: polling only
    delete_after: bool = False  # True: delete a stored file instead of moving it to .sohoa-done


class FtpAccount(BaseModel):
    device: str  # the scanner this account belongs to, recorded on its batches
    username: str
    password: SecretStr

    @field_validator("username")
    @classmethod
    def _not_anonymous(cls, v: str) -> str:
        if not v or v.lower() in ("anonymous", "ftp"):
            raise ValueError("anonymous FTP is refused: give each scanner a named account")
        return v

    @field_validator("password")
    @classmethod
    def _has_password(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("an FTP account needs a password")
        return v


class FtpConfig(BaseModel):
    accounts: list[FtpAccount]
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: any free port (see FtpReceiver.port)
    passive_ports: tuple[int, int] | None = None  # (first, last) for firewalls; default: any
    masquerade_address: str | None = None  # address announced in PASV replies behind NAT
    max_file_bytes: int = Field(default=2 << 30, gt=0)  # larger uploads are cut and kept incomplete
    max_connections: int = Field(default=32, gt=0)  # sessions at once
    max_connections_per_ip: int = Field(default=8, ge=0)  # 0: no per-address limit
    idle_timeout_seconds: float = Field(default=300.0, gt=0)  # control and data connections
    auth_failed_delay_seconds: float = Field(default=3.0, ge=0)  # slows password guessing

    @model_validator(mode="after")
    def _check(self) -> FtpConfig:
        names = [a.username for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError("FTP usernames must be unique")
        if self.passive_ports and not 0 < self.passive_ports[0] <= self.passive_ports[1] <= 65535:
            raise ValueError("passive_ports is (first, last) with first <= last")
        return self


class EmailAccount(BaseModel):
    """A scanner's SMTP AUTH credentials (PLAIN or LOGIN): the device names its batches."""

    device: str  # the scanner this account belongs to, recorded on its batches
    username: str
    password: SecretStr
    # Envelope senders this scanner may use, beside the `senders` entries naming its device; a
    # device with neither may use any sender address once authenticated.
    senders: list[str] = []

    @field_validator("username")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("an SMTP account needs a username")
        return v

    @field_validator("password")
    @classmethod
    def _has_password(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("an SMTP account needs a password")
        return v

    @field_validator("senders")
    @classmethod
    def _lowercase(cls, v: list[str]) -> list[str]:
        return [address.strip().lower() for address in v]


class EmailConfig(BaseModel):
    # Envelope sender address (any case) -> device name. Without `accounts` this allow-list is the
    # only check (the sender names the device); with them it is a second one after SMTP AUTH.
    senders: dict[str, str] = {}
    # Per-scanner SMTP AUTH accounts: once any is configured, every message needs AUTH first (530
    # otherwise) and the authenticated account names the device.
    accounts: list[EmailAccount] = []
    # PEM certificate (chain) and its key for STARTTLS (the key may sit in the certificate file).
    # AUTH is offered only over TLS, unless allow_plain_auth.
    certificate: Path | None = None
    private_key: Path | None = None
    # AUTH without TLS, for LAN scanners that cannot do STARTTLS: their password then crosses the
    # network in clear text, so this must be chosen explicitly.
    allow_plain_auth: bool = False
    auth_failed_delay_seconds: float = Field(default=3.0, ge=0)  # slows password guessing
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: any free port (see EmailReceiver.port)
    max_message_bytes: int = Field(default=64 << 20, gt=0)  # larger messages get 552
    hostname: str = "sohoa"  # announced in the SMTP greeting (no DNS lookup at start)

    @field_validator("senders")
    @classmethod
    def _lowercase(cls, v: dict[str, str]) -> dict[str, str]:
        return {address.strip().lower(): device for address, device in v.items()}

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        if not self.senders and not self.accounts:
            raise ValueError("configure SMTP accounts, or at least the allowed senders")
        names = [a.username for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError("SMTP usernames must be unique")
        if self.private_key is not None and self.certificate is None:
            raise ValueError("private_key given without a certificate")
        if self.accounts and self.certificate is None and not self.allow_plain_auth:
            raise ValueError("SMTP accounts need a certificate (AUTH is offered only over "
                             "STARTTLS), or allow_plain_auth for scanners without TLS")
        return self


class ScannerConfig(BaseModel):
    """One scanner given by URL (SOHOA_SCANNERS, a JSON list of these)."""

    url: str = Field(pattern=r"^https?://")
    name: str | None = None
    uuid: str | None = None
    agency: str | None = None  # batches from this scanner belong to this agency
    host_header: str | None = None  # quirk: some HP models want "localhost"
    page_delay: float = Field(default=0.0, ge=0, le=10)  # quirk: some Brother models
    certificate_sha256: str | None = None  # expected certificate; else trusted on first use


class ScannersConfig(BaseModel):
    """Scanners and push receivers. Its `folder`, `ftp` and `smtp` fields are the sections of
    scanners/receivers.py's RECEIVERS (tests/test_push_receivers.py checks them against it)."""

    # eSCL scanners by URL: JSON list of {"url", "name", "uuid", "agency", ...}
    # (scanners/devices.py); more are found over mDNS unless discovery is off.
    devices: list[ScannerConfig] = Field(default_factory=list)
    discovery: bool = True
    discovery_seconds: float = Field(default=2.0, ge=0.2, le=30)
    timeout_s: float = Field(default=30.0, ge=1, le=600)
    # Where scanner pages wait until their original is stored (scanners/spool.py); default: the
    # data dir's spool/ (filled in by ingest's Settings).
    spool_dir: Path | None = None

    # Push receivers, each off until configured; JSON, or one field at a time (SOHOA_FTP__PORT=2121).
    # SOHOA_FOLDER='{"devices": {"mfp-1": "/srv/scans/mfp-1"}}'   (scanners/folder.py)
    folder: FolderConfig | None = None
    # SOHOA_FTP='{"accounts": [{"device": "mfp-1", "username": "mfp1", "password": "..."}],
    #             "host": "0.0.0.0", "port": 2121, "passive_ports": [60000, 60100]}'   (scanners/ftp.py)
    ftp: FtpConfig | None = None
    # SOHOA_SMTP='{"senders": {"scanner@office.example": "mfp-1"}, "host": "0.0.0.0", "port": 2525}'
    smtp: EmailConfig | None = None
