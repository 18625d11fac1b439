#!/usr/bin/perl
# Reverses every line the client sends until it closes the connection.
use strict;
use warnings;
$| = 1;
print "reverse: send lines, close to stop (you are $ENV{TCPREMOTEIP})\n";
my $n = 0;
while (my $line = <STDIN>) {
	$line =~ s/\r?\n\z//;
	print scalar reverse($line), "\n";
	$n++;
}
print STDERR "reversed $n lines for $ENV{TCPREMOTEIP}\n";
