using System.Net.Sockets;
using Duroslight.Server.Cli;
using Duroslight.Server.Control;
using Duroslight.Server.Hosting;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
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
        if (args.Contains("--help") || args.Contains("-h"))
        {
            Console.Out.Write(CommandLine.Usage);
            return 0;
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

    /// <summary>
    /// The generic host runs the node: its console lifetime handles SIGTERM/SIGINT (graceful stop, exit 0), the
    /// systemd notifier reports the lifecycle. Exit 1 when the node cannot start (the reason is logged).
    /// </summary>
    private static async Task<int> ServeAsync(ServeSettings settings)
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff "; o.UseUtcTimestamp = true; })
            .SetMinimumLevel(settings.LogLevel)
            // The node logs its own start, listeners and stop; the frameworks speak only about problems.
            .AddFilter("Microsoft", LogLevel.Warning)
            .AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        // The drain limit plus time to flush: the host must not give up on a graceful stop before systemd does.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.DrainTimeout + TimeSpan.FromSeconds(60));
        builder.Services.AddSingleton<ISystemdNotifier, SystemdNotifier>();
        builder.Services.AddSingleton(sp => new NodeHost(settings, sp.GetRequiredService<ILoggerFactory>())
        {
            StateChanged = NodeService.Notifier(sp.GetRequiredService<ISystemdNotifier>(), sp.GetRequiredService<ILoggerFactory>().CreateLogger("duroslight")),
        });
        builder.Services.AddHostedService<NodeService>();
        using var host = builder.Build();
        var logger = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("duroslight");
        try
        {
            await host.StartAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is UsageException or Reactor.ReactorUnavailableException or VolumeStoreException or SocketException or IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            logger.LogCritical("cannot start: {Error}", e.Message);
            await host.Services.GetRequiredService<NodeHost>().StopAsync().ConfigureAwait(false);
            return 1;
        }
        await host.WaitForShutdownAsync().ConfigureAwait(false);
        return 0;
    }
}
