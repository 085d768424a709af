using System.Globalization;

namespace Duroslight.Soak;

/// <summary>Command line of both roles (Program.cs shows the usage).</summary>
internal sealed record SoakOptions
{
    public string Role { get; init; } = "";
    public int Port { get; init; } = 4420;
    public string Nqn { get; init; } = "nqn.2026-11.io.duroslight:default";
    public uint Nsid { get; init; } = 1;
    public string ControlSocket { get; init; } = "";
    public int Pid { get; init; }
    public int Seconds { get; init; } = 60;
    public int Workers { get; init; } = 3;
    public int Id { get; init; }
    public int Seed { get; init; } = Environment.TickCount;

    public static SoakOptions Parse(string[] args)
    {
        if (args.Length == 0 || args[0] is not ("run" or "worker")) throw new ArgumentException("the first argument is the role: run or worker");
        var o = new SoakOptions { Role = args[0] };
        for (int i = 1; i < args.Length; i += 2)
        {
            string value = i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{args[i]} needs a value");
            o = args[i] switch
            {
                "--port" => o with { Port = Int(value) },
                "--nqn" => o with { Nqn = value },
                "--nsid" => o with { Nsid = (uint)Int(value) },
                "--control" => o with { ControlSocket = value },
                "--pid" => o with { Pid = Int(value) },
                "--seconds" => o with { Seconds = Int(value) },
                "--workers" => o with { Workers = Int(value) },
                "--id" => o with { Id = Int(value) },
                "--seed" => o with { Seed = Int(value) },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }

        if (o.Role == "run" && (o.ControlSocket.Length == 0 || o.Pid <= 0)) throw new ArgumentException("run needs --control SOCKET and --pid PID of the target");
        return o;
    }

    private static int Int(string text) => int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture);
}
