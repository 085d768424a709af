using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Duroslight.Bench.EngineBenchmarks).Assembly).Run(args);
