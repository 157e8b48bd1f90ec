<#
.SYNOPSIS
    Install or upgrade mi-worker as a Windows service (WinSW), offline from a wheelhouse.

.DESCRIPTION
    1. stops the service if it runs (files in use cannot be replaced);
    2. creates <InstallDir>\venv with a per-machine Python >= 3.9 and installs mi-worker from
       the wheelhouse (no internet needed);
    3. writes <InstallDir>\mi-worker.toml from mi-worker.toml.example (only if missing: an
       existing config is never overwritten);
    4. copies WinSW as <InstallDir>\mi-worker-service.exe and its config
       mi-worker-service.xml (only if missing), fills in the secrets you type;
    5. restricts the folder to Administrators, SYSTEM and NetworkService (the service account);
    6. checks the config, optionally runs "mi-worker db upgrade", installs and starts the
       service and waits for its heartbeat ("mi-worker health").
    Run it again to upgrade: config and secrets are kept.

    This file is ASCII on purpose: Windows PowerShell 5.1 reads a script without BOM in the
    ANSI code page (GBK on Chinese Windows).

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\install.ps1 -Wheelhouse D:\wheelhouse -WinSW D:\WinSW-x64.exe -PromptSecrets -DbUpgrade

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\install.ps1 -Uninstall
#>
#Requires -Version 4.0
#Requires -RunAsAdministrator
[CmdletBinding()]
param(
    # Folder with mi_worker-*.whl and all dependency wheels ("make wheelhouse").
    [string]$Wheelhouse = '',
    # WinSW 2.x executable (WinSW-x64.exe, or WinSW-NET461.exe with .NET 4.6.1+).
    [string]$WinSW = '',
    [string]$InstallDir = 'C:\mi-worker',
    # python.exe of a per-machine Python >= 3.9; found automatically when empty.
    [string]$Python = '',
    # pip extras: odbc (SQL Server / PostgreSQL), add ",gm" for SM2/SM4 provinces.
    [string]$Extras = 'odbc',
    # Ask for the database URL, gateway secret and webhook URL (typed input is not echoed).
    [switch]$PromptSecrets,
    # Run "mi-worker db upgrade" before starting (idempotent; needs a DDL-capable login).
    [switch]$DbUpgrade,
    [switch]$NoStart,
    # Stop and remove the service (files are kept).
    [switch]$Uninstall
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

$ServiceId = 'mi-worker'
$ScriptDir = Split-Path -Parent $MyInvocation.MyCommand.Path
$InstallDir = $InstallDir.TrimEnd('\')
$VenvDir = Join-Path $InstallDir 'venv'
$VenvPython = Join-Path $VenvDir 'Scripts\python.exe'
$MiWorker = Join-Path $VenvDir 'Scripts\mi-worker.exe'
$ConfigPath = Join-Path $InstallDir 'mi-worker.toml'
$ServiceExe = Join-Path $InstallDir 'mi-worker-service.exe'
$ServiceXml = Join-Path $InstallDir 'mi-worker-service.xml'
$LogDir = Join-Path $InstallDir 'logs'
$CaDir = Join-Path $InstallDir 'ca'
# Well-known SIDs: names like "NETWORK SERVICE" are translated on Chinese Windows, SIDs are not.
$SidAdministrators = '*S-1-5-32-544'
$SidSystem = '*S-1-5-18'
$SidNetworkService = '*S-1-5-20'

function Write-Step([string]$Message) {
    Write-Host "==> $Message" -ForegroundColor Cyan
}

function Invoke-Native([string]$FilePath, [string[]]$Arguments) {
    # Native tools write progress to stderr; that is not an error, the exit code is.
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try {
        & $FilePath @Arguments
        $code = $LASTEXITCODE
    } finally {
        $ErrorActionPreference = $saved
    }
    if ($code -ne 0) {
        throw "command failed (exit code $code): $FilePath $($Arguments -join ' ')"
    }
}

function Stop-MiWorkerService {
    $svc = Get-Service -Name $ServiceId -ErrorAction SilentlyContinue
    if ($svc -and $svc.Status -ne 'Stopped') {
        Write-Step "Stopping service $ServiceId (in-flight calls get up to 30 s)"
        Stop-Service -Name $ServiceId
        $svc.WaitForStatus('Stopped', (New-TimeSpan -Seconds 90))
    }
}

function Find-Python {
    if ($Python) {
        return $Python
    }
    $py = Get-Command -Name 'py.exe' -ErrorAction SilentlyContinue
    if ($py) {
        $saved = $ErrorActionPreference
        $ErrorActionPreference = 'Continue'
        $found = & $py.Path -3 -c 'import sys; print(sys.executable)' 2>$null
        $code = $LASTEXITCODE
        $ErrorActionPreference = $saved
        if ($code -eq 0 -and $found) {
            return ($found | Select-Object -First 1).Trim()
        }
    }
    $roots = @($env:ProgramFiles, ${env:ProgramFiles(x86)}) | Where-Object { $_ -and (Test-Path $_) }
    $candidates = foreach ($root in $roots) {
        Get-ChildItem -Path $root -Filter 'Python3*' -ErrorAction SilentlyContinue |
            Where-Object { $_.PSIsContainer -and (Test-Path (Join-Path $_.FullName 'python.exe')) } |
            ForEach-Object { Join-Path $_.FullName 'python.exe' }
    }
    # Highest minor version first (a plain string sort would put Python39 above Python311).
    $best = $candidates |
        Sort-Object -Descending -Property @{ Expression = { if ($_ -match 'Python3(\d+)') { [int]$Matches[1] } else { 0 } } } |
        Select-Object -First 1
    if (-not $best) {
        throw 'No Python 3 found. Install Python >= 3.9 "for all users" or pass -Python C:\path\python.exe'
    }
    return $best
}

function Test-PythonVersion([string]$Exe) {
    $text = & $Exe -c 'import sys; print(str(sys.version_info[0]) + chr(46) + str(sys.version_info[1]))'
    if ($LASTEXITCODE -ne 0 -or -not $text) {
        throw "cannot run $Exe"
    }
    $version = [version](($text | Select-Object -First 1).Trim())
    if ($version -lt [version]'3.9') {
        throw "$Exe is Python $version; mi-worker needs 3.9 or later"
    }
    $full = (Resolve-Path $Exe).Path
    if ($full -like '*\Users\*' -or $full -like '*\AppData\*') {
        throw "$full is a per-user Python: the service account cannot use it. Install Python 'for all users' (Program Files)."
    }
    Write-Host "    Python $version at $full"
}

function Read-Secret([string]$Prompt) {
    $secure = Read-Host -Prompt "$Prompt (Enter = keep current)" -AsSecureString
    $bstr = [Runtime.InteropServices.Marshal]::SecureStringToBSTR($secure)
    try {
        return [Runtime.InteropServices.Marshal]::PtrToStringBSTR($bstr)
    } finally {
        [Runtime.InteropServices.Marshal]::ZeroFreeBSTR($bstr)
    }
}

function Get-ServiceXml {
    # XmlDocument.Load honours the UTF-8 declaration (Get-Content would read GBK).
    $doc = New-Object System.Xml.XmlDocument
    $doc.PreserveWhitespace = $true
    $doc.Load($ServiceXml)
    return $doc
}

function Set-EnvEntry($Doc, [string]$Name, [string]$Value) {
    $node = $Doc.SelectSingleNode("/service/env[@name='$Name']")
    if (-not $node) {
        $node = $Doc.CreateElement('env')
        $node.SetAttribute('name', $Name)
        [void]$Doc.DocumentElement.AppendChild($node)
    }
    # SetAttribute escapes & and quotes for us.
    $node.SetAttribute('value', $Value)
}

# --- uninstall -------------------------------------------------------------------------------
if ($Uninstall) {
    Stop-MiWorkerService
    if (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue) {
        Write-Step "Removing service $ServiceId"
        Invoke-Native $ServiceExe @('uninstall')
    }
    Write-Host "Service removed. Files are kept in $InstallDir (delete them after auditing the logs)."
    exit 0
}

if (-not $Wheelhouse -or -not (Test-Path (Join-Path $Wheelhouse 'mi_worker-*.whl'))) {
    throw "-Wheelhouse must name a folder containing mi_worker-*.whl (got '$Wheelhouse')"
}
if (-not $WinSW -or -not (Test-Path $WinSW)) {
    throw "-WinSW must name the WinSW 2.x executable, e.g. D:\WinSW-x64.exe (got '$WinSW')"
}
if ($InstallDir.Contains("'")) {
    throw 'InstallDir must not contain a single quote (it is written into TOML literal strings)'
}

# --- 1. stop ---------------------------------------------------------------------------------
Stop-MiWorkerService

# --- 2. venv + packages ----------------------------------------------------------------------
foreach ($dir in @($InstallDir, $LogDir, $CaDir)) {
    if (-not (Test-Path $dir)) {
        [void](New-Item -ItemType Directory -Path $dir)
    }
}
if (-not (Test-Path $VenvPython)) {
    $basePython = Find-Python
    Test-PythonVersion $basePython
    Write-Step "Creating virtualenv $VenvDir"
    Invoke-Native $basePython @('-m', 'venv', $VenvDir)
}
Write-Step "Installing mi-worker[$Extras] from $Wheelhouse (offline)"
Invoke-Native $VenvPython @('-m', 'pip', 'install', '--no-index', '--find-links', $Wheelhouse,
    '--upgrade', "mi-worker[$Extras]")

# --- 3. config -------------------------------------------------------------------------------
if (-not (Test-Path $ConfigPath)) {
    Write-Step "Writing $ConfigPath (edit it: gateway URL, fixmedins_code, admdvs, operator)"
    $template = [IO.File]::ReadAllText((Join-Path $ScriptDir 'mi-worker.toml.example'), [Text.Encoding]::UTF8)
    $text = $template.Replace('C:\mi-worker', $InstallDir)
    # UTF-8 without BOM: Python's TOML reader rejects a BOM.
    [IO.File]::WriteAllText($ConfigPath, $text, (New-Object System.Text.UTF8Encoding($false)))
} else {
    Write-Host "    keeping existing $ConfigPath"
}

# --- 4. WinSW wrapper + secrets --------------------------------------------------------------
Write-Step "Installing the service wrapper $ServiceExe"
Copy-Item -Path $WinSW -Destination $ServiceExe -Force
if (-not (Test-Path $ServiceXml)) {
    Copy-Item -Path (Join-Path $ScriptDir 'mi-worker-service.xml') -Destination $ServiceXml
}
$doc = Get-ServiceXml
$urlNode = $doc.SelectSingleNode("/service/env[@name='MI_WORKER_DATABASE_URL']")
$needUrl = (-not $urlNode) -or $urlNode.GetAttribute('value').Contains('CHANGE_ME')
if ($PromptSecrets -or $needUrl) {
    Write-Host '    Database URL examples:'
    Write-Host '      mssql+pyodbc://user:pw@host:1433/db?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes'
    Write-Host '      postgresql://user:pw@host:5432/db'
    Write-Host '    (percent-encode @ : / ? # % in the password)'
    $entries = @(
        @('MI_WORKER_DATABASE_URL', 'Database URL'),
        @('MI_WORKER_GATEWAY_SECRET', 'Gateway secret (tif/csb; empty for single)'),
        @('MI_WORKER_ALERTS_WEBHOOK_URL', 'WeCom/DingTalk robot URL (optional)')
    )
    foreach ($entry in $entries) {
        $value = Read-Secret $entry[1]
        if ($value) {
            Set-EnvEntry $doc $entry[0] $value
        }
    }
    $doc.Save($ServiceXml)
    $doc = Get-ServiceXml
}
$urlNode = $doc.SelectSingleNode("/service/env[@name='MI_WORKER_DATABASE_URL']")
if ((-not $urlNode) -or $urlNode.GetAttribute('value').Contains('CHANGE_ME')) {
    throw "MI_WORKER_DATABASE_URL in $ServiceXml is still a placeholder; run again with -PromptSecrets"
}

# --- 5. permissions --------------------------------------------------------------------------
Write-Step "Restricting $InstallDir to Administrators, SYSTEM and NetworkService"
# Folders under C:\ inherit "Authenticated Users: Modify"; anyone could then replace the
# service's executables or read its secrets. Replace that with explicit rights.
Invoke-Native 'icacls.exe' @($InstallDir, '/inheritance:r', '/grant:r',
    "$($SidAdministrators):(OI)(CI)F", "$($SidSystem):(OI)(CI)F", "$($SidNetworkService):(OI)(CI)RX", '/Q')
Invoke-Native 'icacls.exe' @((Join-Path $InstallDir '*'), '/reset', '/T', '/C', '/Q')
Invoke-Native 'icacls.exe' @($LogDir, '/grant', "$($SidNetworkService):(OI)(CI)M", '/Q')

# --- 6. check, upgrade, install, start -------------------------------------------------------
# The secrets are set for this process only (for config check / db upgrade) and removed again.
$secretNames = @()
try {
    foreach ($node in $doc.SelectNodes('/service/env')) {
        $name = $node.GetAttribute('name')
        $value = [Environment]::ExpandEnvironmentVariables($node.GetAttribute('value'))
        [Environment]::SetEnvironmentVariable($name, $value, 'Process')
        $secretNames += $name
    }
    # Keep these admin runs out of the service's own log file.
    [Environment]::SetEnvironmentVariable('MI_WORKER_LOGGING_FILE', (Join-Path $LogDir 'install.log'), 'Process')
    $secretNames += 'MI_WORKER_LOGGING_FILE'

    Write-Step 'Checking the configuration'
    Invoke-Native $MiWorker @('--config', $ConfigPath, 'config', 'check')
    if ($DbUpgrade) {
        Write-Step 'Applying database migrations (mi-worker db upgrade)'
        Invoke-Native $MiWorker @('--config', $ConfigPath, 'db', 'upgrade')
    }

    if (-not (Get-Service -Name $ServiceId -ErrorAction SilentlyContinue)) {
        Write-Step "Registering service $ServiceId"
        Invoke-Native $ServiceExe @('install')
    } else {
        Write-Host "    service $ServiceId already registered (account/start-mode changes need -Uninstall first)"
    }

    if ($NoStart) {
        Write-Host "Installed. Start it with: Start-Service $ServiceId"
        exit 0
    }
    Write-Step "Starting service $ServiceId"
    Start-Service -Name $ServiceId
    $alive = $false
    for ($i = 0; $i -lt 18 -and -not $alive; $i++) {
        Start-Sleep -Seconds 5
        $saved = $ErrorActionPreference
        $ErrorActionPreference = 'Continue'
        & $MiWorker --config $ConfigPath health --max-age 60 2>$null | Out-Null
        $alive = ($LASTEXITCODE -eq 0)
        $ErrorActionPreference = $saved
    }
    if (-not $alive) {
        Write-Warning "No fresh heartbeat after 90 s. Look at $LogDir\mi-worker.log and $LogDir\mi-worker-service.err.log"
        exit 1
    }
    Write-Host "mi-worker is running; heartbeat is fresh. Logs: $LogDir" -ForegroundColor Green
} finally {
    foreach ($name in $secretNames) {
        [Environment]::SetEnvironmentVariable($name, $null, 'Process')
    }
}
