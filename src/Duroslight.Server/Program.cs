using System.Net.Sockets;
using System.Runtime.InteropServices;
using Duroslight.Server.Cli;
using Duroslight.Server.Control;
using Duroslight.Server.Hosting;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server;

public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.WriteLine(CommandLine.Usage + ControlCli.Usage);
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] == "ctl") return await ControlCli.CtlAsync(args[1..], Console.Out, Console.Error).ConfigureAwait(false);
        if (args[0] == "status") return await ControlCli.StatusAsync(args[1..], Console.Out, Console.Error).ConfigureAwait(false);
        if (args[0] != "serve")
        {
            Console.Error.WriteLine($"duroslight: unknown command '{args[0]}'\n{CommandLine.Usage}");
            return 2;
        }
        ServeSettings settings;
        try
        {
            settings = CommandLine.ParseServe(args[1..]);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"duroslight: {e.Message}");
            return 2;
        }
        return await ServeAsync(settings).ConfigureAwait(false);
    }

    private static async Task<int> ServeAsync(ServeSettings settings)
    {
        using var loggers = LoggerFactory.Create(b => b
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff "; o.UseUtcTimestamp = true; })
            .SetMinimumLevel(settings.LogLevel));
        var logger = loggers.CreateLogger("duroslight");
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        await using var node = new NodeHost(settings, loggers);
        try
        {
            node.Start();
        }
        catch (Exception e) when (e is UsageException or Reactor.ReactorUnavailableException or VolumeStoreException or SocketException or IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            logger.LogCritical("cannot start: {Error}", e.Message);
            return 1;
        }
        await Task.WhenAny(stop.Task, node.ShutdownRequested).ConfigureAwait(false);
        logger.LogInformation("shutting down");
        await node.StopAsync().ConfigureAwait(false);
        return 0;
    }
}
