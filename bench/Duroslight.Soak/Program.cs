using Duroslight.Soak;

// duroslight-soak run --port P --control SOCKET --pid PID [--seconds 60] [--workers 3] [--nqn NQN] [--nsid 1] [--seed N]
//     starts WORKERS host processes and changes volumes and host lists through the control API while they run;
//     exit 0 when every worker verified everything and the target's resources came back (bench/README.md "Soak")
// duroslight-soak worker --port P --id K --workers N --seconds S [--nqn NQN] [--nsid 1] [--seed N]
//     one host process (started by run)
SoakOptions options;
try
{
    options = SoakOptions.Parse(args);
}
catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
{
    Console.Error.WriteLine($"duroslight-soak: {e.Message}");
    return 2;
}

try
{
    return options.Role == "run" ? await new SoakRun(options).RunAsync() : await new SoakWorker(options).RunAsync();
}
catch (Exception e)
{
    Console.Error.WriteLine($"duroslight-soak {options.Role} {options.Id}: FAILED: {e}");
    return 1;
}
