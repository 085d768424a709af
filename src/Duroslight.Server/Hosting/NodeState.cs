namespace Duroslight.Server.Hosting;

/// <summary>The product's lifecycle: Inactive -> GFTL -> Duroslight -> Activating -> Active, and Draining on shutdown.</summary>
public enum NodeState
{
    Inactive,
    /// <summary>Opening the storage layer (the GFTL; for now the volume store).</summary>
    Gftl,
    /// <summary>Building the protocol target: subsystems, namespaces.</summary>
    Duroslight,
    /// <summary>Opening listeners.</summary>
    Activating,
    Active,
    Draining,
    Stopped,
}
