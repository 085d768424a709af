using System.Security.Cryptography;
using System.Text;

namespace Duroslight.Server.Control;

/// <summary>
/// The bearer tokens of the remote API, from a file of one token per line ('#' starts a comment). The file must be
/// readable by the service user only (no group or other permission bits), since whoever reads it can drive the node.
/// Tokens are kept as SHA-256 digests and a presented token is compared with every one in constant time
/// (<see cref="CryptographicOperations.FixedTimeEquals"/> on equal-length digests), so neither the timing of a
/// refusal nor of an acceptance says how much of a guess was right, or how long a token is.
/// </summary>
public sealed class ApiTokens
{
    /// <summary>Shorter tokens are refused at start: a guessable token is no authentication.</summary>
    public const int MinimumLength = 16;

    private readonly byte[][] _digests;

    private ApiTokens(byte[][] digests) => _digests = digests;

    public int Count => _digests.Length;

    /// <summary>Reads and checks the file; a <see cref="Cli.UsageException"/> says what is wrong with it.</summary>
    public static ApiTokens Load(string path)
    {
        if (!File.Exists(path)) throw new Cli.UsageException($"api tokens file '{path}' does not exist");
        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            if ((mode & others) != 0)
                throw new Cli.UsageException($"api tokens file '{path}' is accessible to group or others (mode {Octal(mode)}); " +
                    $"it must be readable by the service user only: chmod 600 '{path}'");
        }
        var digests = new List<byte[]>();
        int line = 0;
        foreach (string raw in File.ReadLines(path))
        {
            line++;
            string token = raw.Trim();
            if (token.Length == 0 || token[0] == '#') continue;
            if (token.Length < MinimumLength || token.Contains(' ', StringComparison.Ordinal))
                throw new Cli.UsageException($"api tokens file '{path}':{line}: a token is one word of at least {MinimumLength} characters");
            digests.Add(Digest(token));
        }
        return digests.Count > 0 ? new ApiTokens([.. digests]) : throw new Cli.UsageException($"api tokens file '{path}' holds no token");
    }

    /// <summary>Whether an Authorization header value is "Bearer TOKEN" with a known token.</summary>
    public bool IsAuthorized(string? authorization)
    {
        const string scheme = "Bearer ";
        if (authorization is null || !authorization.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) return false;
        byte[] presented = Digest(authorization[scheme.Length..].Trim());
        bool match = false;
        foreach (byte[] digest in _digests) match |= CryptographicOperations.FixedTimeEquals(presented, digest); // no early exit
        return match;
    }

    private static byte[] Digest(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));

    private static string Octal(UnixFileMode mode) => Convert.ToString((int)mode, 8).PadLeft(4, '0');
}
