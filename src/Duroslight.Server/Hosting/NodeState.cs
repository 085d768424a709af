namespace Duroslight.Server.Hosting;

/// <summary>
/// The product's lifecycle: Inactive -> GFTL -> Duroslight -> Activating -> Active, and Draining on shutdown.
/// Outside the process (status, metrics, systemd STATUS=) a state goes by its product name, <see cref="NodeStateNames.Name"/>.
/// </summary>
public enum NodeState
{
    Inactive,
    /// <summary>Opening the storage layer (the GFTL; for now the volume store).</summary>
    Gftl,
    /// <summary>Building the protocol target: subsystems, namespaces. The product calls this state "Duroslight".</summary>
    BuildingTarget,
    /// <summary>Opening listeners.</summary>
    Activating,
    Active,
    Draining,
    Stopped,
}

public static class NodeStateNames
{
    /// <summary>The product's name of a state, as status, metrics and systemd show it.</summary>
    public static string Name(this NodeState state) => state switch
    {
        NodeState.Inactive => "Inactive",
        NodeState.Gftl => "Gftl",
        NodeState.BuildingTarget => "Duroslight",
        NodeState.Activating => "Activating",
        NodeState.Active => "Active",
        NodeState.Draining => "Draining",
        NodeState.Stopped => "Stopped",
        _ => state.ToString(),
    };
}
