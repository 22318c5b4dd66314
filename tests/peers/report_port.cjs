// Preloaded (`node --require`) into the npm peers the tests start with PORT=0: reports the port
// each server really listens on, so the tests hand the choice of port to the kernel instead of
// picking a "free" one and racing other processes for it. Prints to stderr, one line a server:
//   alibridge-test-port <port>
'use strict';
const net = require('node:net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  this.once('listening', () => {
    const address = this.address();
    if (address && typeof address === 'object') {
      process.stderr.write(`alibridge-test-port ${address.port}\n`);
    }
  });
  return listen.apply(this, args);
};
