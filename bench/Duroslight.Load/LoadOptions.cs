using System.Globalization;

namespace Duroslight.Load;

internal enum Pattern { Read, Write, RandRead, RandWrite, RandRw }

internal sealed record LoadOptions
{
    public const string Usage = """
        usage: duroslight-load [options]      (an fio-like NVMe/TCP load generator on the C# host library)
          --target HOST:PORT   NVMe/TCP listener                 (default 127.0.0.1:4420)
          --nqn NQN            subsystem                          (default nqn.2026-11.io.duroslight:default)
          --nsid N             namespace                          (default: the first active one)
          --connections N      controllers                        (default 1)
          --queues N           I/O queues per controller          (default 1)
          --qd N               commands in flight per queue       (default 32)
          --bs SIZE            block size, e.g. 4k, 128k          (default 4k)
          --rw PATTERN         read|write|randread|randwrite|randrw (default randread)
          --mix PCT            reads in randrw                    (default 70)
          --trim PCT           writes sent as deallocating Write Zeroes instead (default 0)
          --time SECONDS       measured duration                  (default 10)
          --ramp SECONDS       warm-up before measuring           (default 2)
          --size SIZE          bytes of the namespace to use      (default: all of it)
          --ios N              fixed work: N I/Os in all, measured from the first (ramp and time ignored)
          --metrics URL        the target's /metrics: report its shard allocations per I/O and utilisation
        """;

    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 4420;
    public string Nqn { get; init; } = "nqn.2026-11.io.duroslight:default";
    public uint Nsid { get; init; }
    public int Connections { get; init; } = 1;
    public int Queues { get; init; } = 1;
    public int QueueDepth { get; init; } = 32;
    public int BlockSize { get; init; } = 4096;
    public Pattern Pattern { get; init; } = Pattern.RandRead;
    public int ReadPercent { get; init; } = 70;
    public int TrimPercent { get; init; }
    public double Seconds { get; init; } = 10;
    public double RampSeconds { get; init; } = 2;
    public long SizeBytes { get; init; }
    public long Ios { get; init; }
    public string? MetricsUrl { get; init; }

    public static LoadOptions Parse(string[] args)
    {
        var o = new LoadOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string flag = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{flag} needs a value");
            o = flag switch
            {
                "--target" => Target(o, Next()),
                "--nqn" => o with { Nqn = Next() },
                "--nsid" => o with { Nsid = uint.Parse(Next(), CultureInfo.InvariantCulture) },
                "--connections" => o with { Connections = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--queues" => o with { Queues = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--qd" => o with { QueueDepth = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--bs" => o with { BlockSize = (int)Size(Next()) },
                "--rw" => o with { Pattern = Enum.Parse<Pattern>(Next(), ignoreCase: true) },
                "--mix" => o with { ReadPercent = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--trim" => o with { TrimPercent = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--time" => o with { Seconds = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--ramp" => o with { RampSeconds = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--size" => o with { SizeBytes = Size(Next()) },
                "--ios" => o with { Ios = long.Parse(Next(), CultureInfo.InvariantCulture) },
                "--metrics" => o with { MetricsUrl = Next() },
                _ => throw new ArgumentException($"unknown option '{flag}'"),
            };
        }
        return o;
    }

    private static LoadOptions Target(LoadOptions o, string text)
    {
        int colon = text.LastIndexOf(':');
        return o with { Host = text[..colon], Port = int.Parse(text[(colon + 1)..], CultureInfo.InvariantCulture) };
    }

    private static long Size(string text)
    {
        string t = text.Trim().ToLowerInvariant();
        int shift = t[^1] switch { 'k' => 10, 'm' => 20, 'g' => 30, _ => 0 };
        return long.Parse(shift > 0 ? t[..^1] : t, CultureInfo.InvariantCulture) << shift;
    }
}
