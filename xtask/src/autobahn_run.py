# Runs the Autobahn|Testsuite fuzzing server from the packages installed next to this
# file, bound to 127.0.0.1 only (wstest itself would listen on every interface).
import os
import site
import sys

here = os.path.dirname(os.path.abspath(__file__))
site.addsitedir(os.path.join(here, 'site'))

import autobahn.twisted.websocket as websocket
import autobahntestsuite.fuzzing as fuzzing

_listen = websocket.listenWS


def listen_on_loopback(factory, contextFactory=None, backlog=50, interface=''):
    return _listen(factory, contextFactory, backlog, '127.0.0.1')


fuzzing.listenWS = listen_on_loopback
sys.argv = ['wstest', '-m', 'fuzzingserver', '-s', sys.argv[1]]
from autobahntestsuite import wstest
wstest.run()
