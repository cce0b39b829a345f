print("jobwatch: not built yet")
