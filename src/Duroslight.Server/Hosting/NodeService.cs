using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Systemd;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>
/// The node as a hosted service of the process's generic host: the host's console lifetime turns SIGTERM, SIGINT
/// and SIGQUIT into a graceful stop, the control API's shutdown does the same, and every lifecycle state goes to
/// systemd (READY=1 once Active, STOPPING=1 when Draining, STATUS= the state) through the library's notifier,
/// which does nothing without $NOTIFY_SOCKET.
/// </summary>
public sealed class NodeService(NodeHost node, IHostApplicationLifetime lifetime) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        node.Start();
        _ = node.ShutdownRequested.ContinueWith(_ => lifetime.StopApplication(), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => node.StopAsync();

    /// <summary>The sd_notify message for a state: READY/STOPPING on the transitions systemd waits for, STATUS always.</summary>
    public static string NotifyMessage(NodeState state) => state switch
    {
        NodeState.Active => "READY=1\nSTATUS=Active",
        NodeState.Draining => "STOPPING=1\nSTATUS=Draining",
        _ => $"STATUS={state.Name()}",
    };

    public static Action<NodeState> Notifier(ISystemdNotifier notifier, ILogger logger) => state =>
    {
        if (!notifier.IsEnabled) return;
        notifier.Notify(new ServiceState(NotifyMessage(state)));
        logger.LogDebug("sd_notify {State}", state);
    };
}
