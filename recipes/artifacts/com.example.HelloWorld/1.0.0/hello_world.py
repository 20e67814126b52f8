"""The Greengrass hello-world artifact: greets, writes a line to its work folder, exits 0."""

import os
import sys
import time

message = f"Hello, {sys.argv[1] if len(sys.argv) > 1 else 'world'}! Current time: {time.ctime()}."
print(message)
with open(os.path.join(os.getcwd(), "greetings.log"), "a") as log:
    log.write(message + "\n")
