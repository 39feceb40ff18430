"""Another process on the same backend, for tests of what crosses processes.

``python -m tests.support.bus_peer URL`` opens a driver on URL, echoes every
message heard on the channel ``echo`` back on ``echoed``, prints ``ready``
once listening, then reads commands from stdin, one per line:

- ``post PROJECT QUEUE``: post one message; prints ``posted`` when stored;
- ``quit`` (or the end of stdin): close the driver and exit.
"""

from __future__ import annotations

import asyncio
import sys

from tidings.storage.base import NewMessage
from tidings.storage.registry import driver_from_url

ECHO = "echo"
ECHOED = "echoed"


async def main(url: str) -> None:
    driver = driver_from_url(url, sync="normal")
    await driver.open()
    loop = asyncio.get_running_loop()

    def echo(message: bytes) -> None:
        loop.create_task(driver.publish(ECHOED, message))

    try:
        async with driver.listen(ECHO, echo):
            print("ready", flush=True)
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                command = line.split()
                if not command or command[0] == "quit":
                    return
                if command[0] == "post":
                    await driver.messages.post(
                        command[1], command[2], [NewMessage(body="elsewhere", ttl=300)],
                        "3a8b6a7e-1f2f-4c2b-9f3c-1a2b3c4d5e6f")
                    print("posted", flush=True)
    finally:
        await driver.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
