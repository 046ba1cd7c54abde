<#
.SYNOPSIS
    certkit deploy hook: put a lineage's PFX into Exchange 2007+ and enable it for SMTP (and IIS...).

.DESCRIPTION
    Run by `certkit deploy LINEAGE --to exchange [--services SMTP,IIS]
    [--remove-previous]` on the Exchange server (or by hand: see
    `certkit deploy LINEAGE --to exchange --print`), in Windows PowerShell
    (the Exchange snap-ins do not load in pwsh 7). From the environment,
    never from the command line:

      CERTKIT_PFX                 the PFX file (key + certificate + chain)
      CERTKIT_PFX_PASSWORD_FILE   a file whose first line is the PFX password
      CERTKIT_THUMBPRINT          SHA-1 thumbprint of the new certificate
      CERTKIT_PREVIOUS_THUMBPRINT thumbprint of the certificate it replaces (empty on first issue)
      CERTKIT_PREVIOUS_CERT       or the previous certificate's PEM file

    Steps: load the Exchange management snap-in when the cmdlets are
    missing; Import-ExchangeCertificate (unless the thumbprint is already
    known to Exchange); Enable-ExchangeCertificate -Services ... -Force
    (-Force answers the "overwrite the default SMTP certificate?" prompt,
    which would otherwise hang an unattended run); with -RemovePrevious,
    Remove-ExchangeCertificate of the previous thumbprint after the new one
    is enabled. Exchange 2003 has no such cmdlets: it uses the IIS 6 SMTP
    virtual server, see iis.ps1 -SmtpFqdn.

    Exit 0 on success; a failure exits 1 with a message on stderr, so
    certkit reports it and rolls back.
#>
[CmdletBinding()]
param(
    [string]$Services = "SMTP",
    [switch]$RemovePrevious
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version 2.0

# Fail, Require-Env and Read-PfxPassword are in iis.ps1 too, on purpose: an administrator
# copies one script to a Windows server (certkit deploy --print) and it must run on its own.
function Fail([string]$Message) {
    [Console]::Error.WriteLine("exchange.ps1: " + $Message)
    exit 1
}

function Require-Env([string]$Name) {
    $value = [Environment]::GetEnvironmentVariable($Name)
    if ([string]::IsNullOrEmpty($value)) {
        Fail ("environment variable " + $Name + " is not set - run this script through certkit deploy, or set it as certkit deploy --print shows")
    }
    return $value
}

function Read-PfxPassword([string]$Path) {
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
        Fail ("PFX password file " + $Path + " does not exist")
    }
    $lines = [System.IO.File]::ReadAllLines($Path)
    if ($lines.Length -lt 1 -or $lines[0].Length -eq 0) {
        Fail ("PFX password file " + $Path + " is empty")
    }
    $secure = New-Object System.Security.SecureString
    foreach ($ch in $lines[0].ToCharArray()) { $secure.AppendChar($ch) }
    $secure.MakeReadOnly()
    return $secure
}

function Use-ExchangeShell {
    if (Get-Command Enable-ExchangeCertificate -ErrorAction SilentlyContinue) { return }
    # Exchange 2013+, 2010, 2007 register differently named snap-ins.
    $snapins = @("Microsoft.Exchange.Management.PowerShell.SnapIn",
                 "Microsoft.Exchange.Management.PowerShell.E2010",
                 "Microsoft.Exchange.Management.PowerShell.Admin")
    foreach ($name in $snapins) {
        if (Get-PSSnapin -Registered -Name $name -ErrorAction SilentlyContinue) {
            Add-PSSnapin $name
            if (Get-Command Enable-ExchangeCertificate -ErrorAction SilentlyContinue) { return }
        }
    }
    Fail "the Exchange management tools are not installed here - run this script on the Exchange server (Exchange 2007 or later; for Exchange 2003 use iis.ps1 -SmtpFqdn)"
}

function Previous-Thumbprint {
    $thumb = [Environment]::GetEnvironmentVariable("CERTKIT_PREVIOUS_THUMBPRINT")
    if (-not [string]::IsNullOrEmpty($thumb)) { return $thumb.ToUpperInvariant() }
    $prev = [Environment]::GetEnvironmentVariable("CERTKIT_PREVIOUS_CERT")
    if ([string]::IsNullOrEmpty($prev)) { return "" }
    if ($prev -match '^[0-9A-Fa-f]{40}$') { return $prev.ToUpperInvariant() }
    if (Test-Path -LiteralPath $prev -PathType Leaf) {
        $cert = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2(, [System.IO.File]::ReadAllBytes($prev))
        return $cert.Thumbprint.ToUpperInvariant()
    }
    return ""
}

function Import-Certificate([string]$PfxPath, [string]$PasswordFile, [string]$Thumbprint) {
    $known = Get-ExchangeCertificate -Thumbprint $Thumbprint -ErrorAction SilentlyContinue
    if ($known) {
        Write-Output ("certificate " + $Thumbprint + " is already known to Exchange")
        return
    }
    $password = Read-PfxPassword $PasswordFile
    $cmd = Get-Command Import-ExchangeCertificate
    if ($cmd.Parameters.ContainsKey("FileData")) {
        # Exchange 2010 and later take the file's bytes (the path would be
        # resolved on the server that runs the cmdlet, not this one).
        $bytes = [System.IO.File]::ReadAllBytes($PfxPath)
        Import-ExchangeCertificate -FileData $bytes -Password $password -PrivateKeyExportable:$false | Out-Null
    }
    else {
        # Exchange 2007
        Import-ExchangeCertificate -Path $PfxPath -Password $password | Out-Null
    }
    Write-Output ("imported " + $Thumbprint + " into Exchange")
}

$pfx = Require-Env "CERTKIT_PFX"
$passwordFile = Require-Env "CERTKIT_PFX_PASSWORD_FILE"
$thumbprint = (Require-Env "CERTKIT_THUMBPRINT").ToUpperInvariant()
if (-not (Test-Path -LiteralPath $pfx -PathType Leaf)) { Fail ("PFX file " + $pfx + " does not exist") }
$serviceList = ($Services -split ",") | ForEach-Object { $_.Trim().ToUpperInvariant() } | Where-Object { $_ }
if (-not $serviceList) { Fail "-Services is empty - use e.g. SMTP or SMTP,IIS" }
$serviceText = $serviceList -join ","

try {
    Use-ExchangeShell
    Import-Certificate $pfx $passwordFile $thumbprint
    Enable-ExchangeCertificate -Thumbprint $thumbprint -Services $serviceText -Force
    Write-Output ("enabled " + $thumbprint + " for " + $serviceText)
    $check = Get-ExchangeCertificate -Thumbprint $thumbprint
    if ([string]$check.Services -notmatch "SMTP" -and $serviceList -contains "SMTP") {
        Fail ("Exchange reports services '" + [string]$check.Services + "' for " + $thumbprint + ", without SMTP")
    }
    if ($RemovePrevious) {
        $previous = Previous-Thumbprint
        if ($previous -and $previous -ne $thumbprint) {
            if (Get-ExchangeCertificate -Thumbprint $previous -ErrorAction SilentlyContinue) {
                Remove-ExchangeCertificate -Thumbprint $previous -Confirm:$false
                Write-Output ("removed the previous certificate " + $previous)
            }
            else {
                Write-Output ("the previous certificate " + $previous + " is not in Exchange; nothing to remove")
            }
        }
    }
    exit 0
}
catch {
    Fail ($_.Exception.Message)
}
