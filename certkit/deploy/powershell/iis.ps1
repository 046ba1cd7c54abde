<#
.SYNOPSIS
    certkit deploy hook: import a lineage's PFX into LocalMachine\My and bind it in IIS.

.DESCRIPTION
    Run by `certkit deploy LINEAGE --to iis` on Windows (or by hand: see
    `certkit deploy LINEAGE --to iis --print`). Everything about the
    certificate comes from the environment, never from the command line:

      CERTKIT_PFX                the PFX file (key + certificate + chain)
      CERTKIT_PFX_PASSWORD_FILE  a file whose first line is the PFX password
      CERTKIT_THUMBPRINT         SHA-1 thumbprint, upper-case hex (as Windows shows it)
      CERTKIT_NAME, CERTKIT_DOMAINS, CERTKIT_NOT_AFTER   for messages

    Steps:
      1. Import the PFX into Cert:\LocalMachine\My: Import-PfxCertificate
         (Windows Server 2012 / Windows 8 and later); on older systems the
         .NET X509Store (PowerShell 2.0 on Server 2003/2008); as a last
         resort `certutil -importPFX`, which asks for the password itself -
         certkit never passes it with -p, because a command line is visible
         to every user of the machine.
      2. With -Site: bind it to an https binding of that IIS 7+ site (name or
         numeric id) on -Port (default 443), optionally -HostHeader and -Sni
         (IIS 8+), creating the binding when missing.
      3. With -SmtpFqdn (IIS 6 SMTP virtual server, Exchange 2003): check the
         certificate carries that name, then print the one step that has no
         supported automation on those systems.

    Exit 0 on success; any failure stops the script with exit 1 and a
    message on stderr, so certkit reports it and rolls back.
#>
[CmdletBinding()]
param(
    [string]$Site = "",
    [int]$Port = 443,
    [string]$HostHeader = "",
    [string]$IPAddress = "*",
    [switch]$Sni,
    [string]$SmtpFqdn = ""
)

$ErrorActionPreference = "Stop"
Set-StrictMode -Version 2.0

# Fail, Require-Env and Read-PfxPassword are in exchange.ps1 too, on purpose: an administrator
# copies one script to a Windows server (certkit deploy --print) and it must run on its own.
function Fail([string]$Message) {
    [Console]::Error.WriteLine("iis.ps1: " + $Message)
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

function Import-WithDotNet([string]$PfxPath, [System.Security.SecureString]$Password) {
    # Works from .NET 2.0 / PowerShell 2.0 on: MachineKeySet puts the private key
    # in the machine key store (readable by IIS and the SMTP service),
    # PersistKeySet keeps it after this process exits.
    $flags = [System.Security.Cryptography.X509Certificates.X509KeyStorageFlags]"MachineKeySet,PersistKeySet"
    $collection = New-Object System.Security.Cryptography.X509Certificates.X509Certificate2Collection
    $collection.Import($PfxPath, [Runtime.InteropServices.Marshal]::PtrToStringBSTR([Runtime.InteropServices.Marshal]::SecureStringToBSTR($Password)), $flags)
    $my = New-Object System.Security.Cryptography.X509Certificates.X509Store("My", "LocalMachine")
    $ca = New-Object System.Security.Cryptography.X509Certificates.X509Store("CA", "LocalMachine")
    $my.Open("ReadWrite")
    $ca.Open("ReadWrite")
    try {
        foreach ($cert in $collection) {
            if ($cert.HasPrivateKey) { $my.Add($cert) }
            elseif ($cert.Subject -ne $cert.Issuer) { $ca.Add($cert) }
        }
    }
    finally {
        $my.Close()
        $ca.Close()
    }
}

function Import-Pfx([string]$PfxPath, [string]$PasswordFile, [string]$Thumbprint) {
    $existing = Get-ChildItem -Path Cert:\LocalMachine\My | Where-Object { $_.Thumbprint -eq $Thumbprint }
    if ($existing) {
        Write-Output ("certificate " + $Thumbprint + " is already in LocalMachine\My")
        return
    }
    $password = Read-PfxPassword $PasswordFile
    if (Get-Command Import-PfxCertificate -ErrorAction SilentlyContinue) {
        Import-PfxCertificate -FilePath $PfxPath -CertStoreLocation Cert:\LocalMachine\My -Password $password | Out-Null
        Write-Output ("imported " + $Thumbprint + " into LocalMachine\My (Import-PfxCertificate)")
        return
    }
    try {
        Import-WithDotNet $PfxPath $password
        Write-Output ("imported " + $Thumbprint + " into LocalMachine\My (.NET X509Store)")
        return
    }
    catch {
        Write-Warning (".NET import failed: " + $_.Exception.Message + " - trying certutil")
    }
    if (-not [Environment]::UserInteractive) {
        Fail ("cannot import " + $PfxPath + " without a console for certutil's password prompt - run this script in an elevated PowerShell window")
    }
    Write-Output ("certutil will ask for the PFX password: it is the first line of " + $PasswordFile)
    & certutil.exe -f -importPFX My $PfxPath
    if ($LASTEXITCODE -ne 0) { Fail ("certutil -importPFX failed with exit code " + $LASTEXITCODE) }
    Write-Output ("imported " + $Thumbprint + " into LocalMachine\My (certutil)")
}

function Find-Site([string]$NameOrId) {
    $all = @(Get-Website)
    if ($NameOrId -match '^\d+$') {
        $found = @($all | Where-Object { $_.id -eq [int]$NameOrId })
    }
    else {
        $found = @($all | Where-Object { $_.name -eq $NameOrId })
    }
    if ($found.Count -ne 1) {
        $names = ($all | ForEach-Object { $_.name + " (id " + $_.id + ")" }) -join ", "
        Fail ("no IIS site " + $NameOrId + " - sites here: " + $names)
    }
    return $found[0]
}

function Bind-Site([string]$NameOrId, [int]$BindPort, [string]$HostName, [string]$Address, [bool]$UseSni, [string]$Thumbprint) {
    if (-not (Get-Module -ListAvailable -Name WebAdministration)) {
        Fail "the WebAdministration module (IIS 7.5+) is missing - install the IIS Management Scripts and Tools feature, or bind the certificate in IIS Manager"
    }
    Import-Module WebAdministration
    $siteObject = Find-Site $NameOrId
    $siteName = $siteObject.name
    $sslFlags = 0
    if ($UseSni) { $sslFlags = 1 }
    $binding = Get-WebBinding -Name $siteName -Protocol https -Port $BindPort -HostHeader $HostName
    if (-not $binding) {
        if ($UseSni) {
            New-WebBinding -Name $siteName -Protocol https -Port $BindPort -IPAddress $Address -HostHeader $HostName -SslFlags $sslFlags
        }
        else {
            New-WebBinding -Name $siteName -Protocol https -Port $BindPort -IPAddress $Address -HostHeader $HostName
        }
        Write-Output ("created the https binding " + $Address + ":" + $BindPort + ":" + $HostName + " on site " + $siteName)
    }
    # The certificate lives in http.sys' SSL binding table, keyed by ip:port or,
    # with SNI, by host:port; replace the entry rather than editing it in place.
    if ($UseSni) {
        $key = "IIS:\SslBindings\!" + $BindPort + "!" + $HostName
    }
    elseif ($Address -eq "*") {
        $key = "IIS:\SslBindings\0.0.0.0!" + $BindPort
    }
    else {
        $key = "IIS:\SslBindings\" + $Address + "!" + $BindPort
    }
    if (Test-Path -LiteralPath $key) { Remove-Item -LiteralPath $key }
    $cert = Get-Item -LiteralPath ("Cert:\LocalMachine\My\" + $Thumbprint)
    if ($UseSni) {
        $cert | New-Item -Path $key -SSLFlags $sslFlags | Out-Null
    }
    else {
        $cert | New-Item -Path $key | Out-Null
    }
    Write-Output ("site " + $siteName + " now serves " + $Thumbprint + " on port " + $BindPort)
}

function Show-SmtpVirtualServerStep([string]$Fqdn, [string]$Thumbprint) {
    $cert = Get-Item -LiteralPath ("Cert:\LocalMachine\My\" + $Thumbprint)
    # DnsNameList exists from Windows 8 / Server 2012 on; StrictMode makes a
    # missing property an error, so ask first. GetNameInfo is the old way.
    $names = @()
    if ($cert.PSObject.Properties["DnsNameList"]) { $names = @($cert.DnsNameList | ForEach-Object { $_.Unicode }) }
    if ($names.Count -eq 0) { $names = @($cert.GetNameInfo([System.Security.Cryptography.X509Certificates.X509NameType]::DnsName, $false)) }
    if (-not ($names -contains $Fqdn)) {
        Fail ("the certificate is for " + ($names -join ", ") + ", not the SMTP virtual server's FQDN " + $Fqdn + " - issue it with --cn " + $Fqdn)
    }
    # The SMTP service of IIS 6 (and Exchange 2003, which extends it) takes the
    # certificate in LocalMachine\My whose name matches the virtual server's FQDN;
    # assigning it is a wizard step with no supported command line.
    try {
        $vs = [ADSI]"IIS://localhost/SmtpSvc/1"
        $configured = [string]$vs.FullyQualifiedDomainName
        if ($configured -and $configured -ne $Fqdn) {
            Write-Warning ("the SMTP virtual server's FQDN is " + $configured + ", not " + $Fqdn + " (Properties > Delivery > Advanced)")
        }
    }
    catch {
        Write-Warning "could not read the SMTP virtual server's settings (IIS 6 metabase); check its FQDN by hand"
    }
    Write-Output ("certificate " + $Thumbprint + " for " + $Fqdn + " is in LocalMachine\My.")
    Write-Output "One step remains (IIS 6 SMTP virtual server / Exchange 2003), once per server:"
    Write-Output "  1. Open IIS Manager (Exchange 2003: Exchange System Manager > Servers > SERVER > Protocols > SMTP)."
    Write-Output "  2. Right-click Default SMTP Virtual Server > Properties > Access > Certificate..."
    Write-Output ("  3. Choose 'Replace the current certificate' (or 'Assign an existing certificate') and pick " + $Fqdn + ", thumbprint " + $Thumbprint + ".")
    Write-Output "  4. Access > Authentication: tick 'Requires TLS encryption' for Basic authentication, then OK."
    Write-Output "  5. Restart the service: net stop smtpsvc; net start smtpsvc"
    Write-Output ("Then check it from any machine: certkit check submission://" + $Fqdn + ":587 --expect " + [Environment]::GetEnvironmentVariable("CERTKIT_NAME"))
}

$pfx = Require-Env "CERTKIT_PFX"
$passwordFile = Require-Env "CERTKIT_PFX_PASSWORD_FILE"
$thumbprint = (Require-Env "CERTKIT_THUMBPRINT").ToUpperInvariant()
if (-not (Test-Path -LiteralPath $pfx -PathType Leaf)) { Fail ("PFX file " + $pfx + " does not exist") }
if ($Sni -and [string]::IsNullOrEmpty($HostHeader)) { Fail "-Sni needs -HostHeader (the name clients ask for)" }

try {
    Import-Pfx $pfx $passwordFile $thumbprint
    $imported = Get-ChildItem -Path Cert:\LocalMachine\My | Where-Object { $_.Thumbprint -eq $thumbprint }
    if (-not $imported) { Fail ("after the import, " + $thumbprint + " is not in LocalMachine\My - is CERTKIT_THUMBPRINT the PFX's certificate?") }
    if (-not $imported.HasPrivateKey) { Fail ("certificate " + $thumbprint + " has no private key in LocalMachine\My - re-export the PFX with its key") }
    if ($Site) {
        Bind-Site $Site $Port $HostHeader $IPAddress ([bool]$Sni) $thumbprint
    }
    if ($SmtpFqdn) {
        Show-SmtpVirtualServerStep $SmtpFqdn $thumbprint
    }
    if (-not $Site -and -not $SmtpFqdn) {
        Write-Output "no -Site or -SmtpFqdn given: the certificate is imported, nothing was bound"
    }
    exit 0
}
catch {
    Fail ($_.Exception.Message)
}
